//! `domo ha status`: ask each broker of a Binary Star pair what it is (`mmi.ha`).

use std::process::ExitCode;

use bytes::Bytes;
use domo_mdp::mmi::{self, HaReport};
use serde_json::{Map, Value};

use crate::call::client;
use crate::RequestArgs;

/// What one broker said.
enum Answer {
    /// `200` and its `key=value` fields, in order.
    Pair(Vec<(String, String)>),
    /// `404`: a broker that is not one of a pair.
    Alone,
}

/// `domo ha status`: one block (or JSON object) per broker of `--broker`, asked one at a
/// time. Exit 0 when every broker answered as one of a pair, 1 otherwise.
pub(crate) async fn status(args: &RequestArgs, json: bool) -> ExitCode {
    let mut ok = true;
    let mut objects = Vec::new();
    for endpoint in &args.broker.broker {
        let mut one = args.clone();
        one.broker.broker = vec![endpoint.clone()];
        let answer = ask(&one).await;
        if json {
            objects.push(to_json(endpoint, &answer));
        } else {
            print_text(endpoint, &answer);
        }
        ok &= matches!(answer, Ok(Answer::Pair(_)));
    }
    if json {
        let value = if objects.len() == 1 {
            objects.remove(0)
        } else {
            Value::Array(objects)
        };
        println!("{value}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn ask(args: &RequestArgs) -> Result<Answer, String> {
    let client = client(args).map_err(|e| e.to_string())?;
    let reply = client
        .request("mmi.ha", vec![Bytes::new()])
        .await
        .map_err(|e| e.to_string())?;
    parse(&reply)
}

fn parse(reply: &[Bytes]) -> Result<Answer, String> {
    match mmi::decode_ha_reply(reply).map_err(|e| e.to_string())? {
        HaReport::Pair(fields) => Ok(Answer::Pair(fields)),
        HaReport::Alone => Ok(Answer::Alone),
    }
}

fn print_text(endpoint: &str, answer: &Result<Answer, String>) {
    println!("{endpoint}");
    match answer {
        Ok(Answer::Pair(fields)) => {
            for (key, value) in fields {
                println!("  {key}: {value}");
            }
        }
        Ok(Answer::Alone) => println!("  not part of a pair (no [ha] section)"),
        Err(error) => println!("  error: {error}"),
    }
}

fn to_json(endpoint: &str, answer: &Result<Answer, String>) -> Value {
    let mut object = Map::new();
    object.insert("broker".into(), Value::String(endpoint.to_string()));
    match answer {
        Ok(Answer::Pair(fields)) => {
            for (key, value) in fields {
                object.insert(key.clone(), Value::String(value.clone()));
            }
        }
        Ok(Answer::Alone) => {
            object.insert("state".into(), Value::String("standalone".into()));
        }
        Err(error) => {
            object.insert("error".into(), Value::String(error.clone()));
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_into_fields() {
        let reply: Vec<Bytes> = ["200", "role=primary", "state=active", "peer_term="]
            .into_iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let Ok(Answer::Pair(fields)) = parse(&reply) else {
            panic!("not a pair answer")
        };
        assert_eq!(fields[0], ("role".into(), "primary".into()));
        assert_eq!(fields[2], ("peer_term".into(), String::new()));
        assert!(matches!(
            parse(&[Bytes::from_static(b"404")]),
            Ok(Answer::Alone)
        ));
        assert!(parse(&[Bytes::from_static(b"501")]).is_err());
        assert!(parse(&[]).is_err());
    }
}
