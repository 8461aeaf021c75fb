//! Calls a service once and prints the reply frames.
//!
//! ```text
//! cargo run -p domo-client --example client -- tcp://127.0.0.1:5555 echo hello world
//! ```

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "tcp://127.0.0.1:5555".into());
    let service = args.next().unwrap_or_else(|| "echo".into());
    let body: Vec<Bytes> = args.map(Bytes::from).collect();
    let client = Client::connect(ClientOptions::new([endpoint]))?;
    if !client.service_available(service.clone()).await? {
        eprintln!("no worker serves {service:?} yet; the request waits for one");
    }
    for frame in client.request(service, body).await? {
        println!("{}", String::from_utf8_lossy(&frame));
    }
    Ok(())
}
