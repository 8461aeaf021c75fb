//! Calls a service once and prints the reply frames.
//!
//! ```text
//! cargo run -p domo-client --example client -- tcp://127.0.0.1:5555 echo hello world
//! ```

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Error, ErrorKind};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "tcp://127.0.0.1:5555".into());
    let service = args.next().unwrap_or_else(|| "echo".into());
    let body: Vec<Bytes> = args.map(Bytes::from).collect();
    // Opens nothing yet: the first request connects.
    let client = Client::new(ClientOptions::new([endpoint]))?;
    if !client.service_available(service.clone()).await? {
        eprintln!("no worker serves {service:?} yet; the request waits for one");
    }
    match client.request(service, body).await {
        Ok(reply) => {
            for frame in reply {
                println!("{}", String::from_utf8_lossy(&frame));
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::Disconnected => {
            eprintln!("is the broker running? {e}");
            Err(e)
        }
        Err(e) => Err(e),
    }
}
