//! `domo top`: the broker's overview (`GET /api/overview` on its metrics listener) in the
//! terminal, refreshed every second, busiest service first; `q` quits. `--once` prints one
//! snapshot (`--json`: the overview as the broker serves it) and exits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /api/overview` from `addr` (`host:port`).
///
/// # Errors
/// A message saying what failed: the connection, the status, the body.
pub(crate) fn fetch(addr: &str) -> Result<Value, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{addr}: {e}");
    let target = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| fail(&e))?
        .next()
        .ok_or_else(|| fail(&"no address"))?;
    let mut s = TcpStream::connect_timeout(&target, FETCH_TIMEOUT).map_err(|e| fail(&e))?;
    s.set_read_timeout(Some(FETCH_TIMEOUT))
        .map_err(|e| fail(&e))?;
    let request =
        format!("GET /api/overview HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| fail(&e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| fail(&e))?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail(&"not an HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        let line = head.lines().next().unwrap_or("");
        return Err(fail(&format!(
            "{line} (is this the broker's metrics listener, [metrics] listen?)"
        )));
    }
    serde_json::from_slice(&raw[end + 4..]).map_err(|e| fail(&format!("not an overview: {e}")))
}

/// A fetch whose rates are known: fetched again after a second if the first has none.
fn fetch_with_rates(addr: &str) -> Result<Value, String> {
    let first = fetch(addr)?;
    if !first["interval_seconds"].is_null() {
        return Ok(first);
    }
    std::thread::sleep(Duration::from_millis(1100));
    fetch(addr)
}

fn num(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if digits == 0 => format!("{x:.0}"),
        Some(x) => format!("{x:.digits$}"),
        None => "-".into(),
    }
}

fn millis(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.2} ms"))
}

/// The column titles of the services table.
const COLUMNS: [&str; 8] = [
    "SERVICE", "WORKERS", "BUSY", "QUEUED", "REQ/S", "WAIT P50", "WAIT P99", "EXPIRED",
];

/// The services table's rows, busiest first (as the broker sorts them).
fn service_rows(o: &Value) -> Vec<[String; 8]> {
    o["services"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let idle = s["workers_idle"].as_u64().unwrap_or(0);
            let busy = s["workers_busy"].as_u64().unwrap_or(0);
            [
                s["name"].as_str().unwrap_or("?").to_string(),
                (idle + busy).to_string(),
                busy.to_string(),
                num(&s["queued"], 0),
                num(&s["requests_per_second"], 1),
                millis(&s["queue_wait_p50_ms"]),
                millis(&s["queue_wait_p99_ms"]),
                num(&s["expired_total"], 0),
            ]
        })
        .collect()
}

/// The summary lines above the table.
fn summary(o: &Value) -> Vec<String> {
    let r = &o["requests"];
    let c = &o["connections"];
    let mut lines = vec![format!(
        "domo-broker {}{}   requests {}/s   replies {}/s   queued {}   dropped {}/s   peers {}   paused {}",
        o["broker"]["version"].as_str().unwrap_or("?"),
        if o["broker"]["draining"].as_bool() == Some(true) { " (draining)" } else { "" },
        num(&r["per_second"], 1),
        num(&r["replies_per_second"], 1),
        num(&r["queued"], 0),
        num(&r["dropped_per_second"], 1),
        num(&c["peers"], 0),
        num(&c["clients_paused"], 0),
    )];
    if let Some(p) = o["pair"].as_object() {
        lines.push(format!(
            "pair: {} {} term {} peer {} failovers {}",
            p["role"].as_str().unwrap_or("?"),
            p["state"].as_str().unwrap_or("?"),
            num(&p["term"], 0),
            if p["peer_up"].as_bool() == Some(true) {
                "up"
            } else {
                "down"
            },
            num(&p["failovers"], 0),
        ));
    }
    if let Some(t) = o["titanic"].as_object() {
        lines.push(format!(
            "titanic: pending {}  done {}  store {} B  commits {}/s{}",
            num(&t["pending"], 0),
            num(&t["done"], 0),
            num(&t["store_bytes"], 0),
            num(&t["commits_per_second"], 1),
            t["error"]
                .as_str()
                .map_or(String::new(), |e| format!("  ERROR {e}")),
        ));
    }
    if let Some(t) = o["topics"].as_object() {
        lines.push(format!(
            "topics: publishers {}  subscribers {} ({} lagging)  in {}/s  out {}/s",
            num(&t["publishers"], 0),
            num(&t["subscribers"], 0),
            num(&t["lagging_subscribers"], 0),
            num(&t["messages_in_per_second"], 1),
            num(&t["messages_out_per_second"], 1),
        ));
    }
    if let Some(g) = o["gateway"].as_object() {
        let by: Vec<String> = g["by_status"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {}", num(v, 1)))
                    .collect()
            })
            .unwrap_or_default();
        lines.push(format!(
            "gateway: {}/s  ({})",
            num(&g["requests_per_second"], 1),
            by.join(", ")
        ));
    }
    lines
}

/// The overview as plain text (`--once` without `--json`).
fn text(o: &Value) -> String {
    let rows = service_rows(o);
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = summary(o).join("\n");
    out.push_str("\n\n");
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    out.push_str(&line(COLUMNS.to_vec()));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `domo top`.
pub(crate) fn run(addr: &str, once: bool, json: bool) -> ExitCode {
    if once {
        return match fetch_with_rates(addr) {
            Ok(o) if json => {
                println!("{o}");
                ExitCode::SUCCESS
            }
            Ok(o) => {
                print!("{}", text(&o));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("domo: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Fail before taking the terminal over if the broker is not there.
    let first = match fetch(addr) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("domo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut terminal = ratatui::init();
    let result = interactive(&mut terminal, addr, first);
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn interactive(
    terminal: &mut ratatui::DefaultTerminal,
    addr: &str,
    first: Value,
) -> Result<(), String> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Paragraph, Row, Table};

    let mut overview = first;
    let mut error: Option<String> = None;
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        terminal
            .draw(|frame| {
                let mut lines = summary(&overview);
                lines.push(error.clone().map_or_else(
                    || format!("{addr}   q: quit"),
                    |e| format!("{e} (showing the last overview)   q: quit"),
                ));
                let [top, table] = Layout::vertical([
                    Constraint::Length(u16::try_from(lines.len()).unwrap_or(8) + 1),
                    Constraint::Min(1),
                ])
                .areas(frame.area());
                frame.render_widget(Paragraph::new(lines.join("\n")), top);
                let header = Row::new(COLUMNS).style(Style::new().add_modifier(Modifier::REVERSED));
                let rows = service_rows(&overview).into_iter().map(Row::new);
                let widths = [
                    Constraint::Fill(1),
                    Constraint::Length(8),
                    Constraint::Length(6),
                    Constraint::Length(8),
                    Constraint::Length(9),
                    Constraint::Length(10),
                    Constraint::Length(10),
                    Constraint::Length(8),
                ];
                frame.render_widget(Table::new(rows, widths).header(header), table);
            })
            .map_err(|e| e.to_string())?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(|e| e.to_string())? {
            if let Event::Key(key) = event::read().map_err(|e| e.to_string())? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.kind == KeyEventKind::Press
                    && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                {
                    return Ok(());
                }
            }
            continue;
        }
        next = Instant::now() + Duration::from_secs(1);
        match fetch(addr) {
            Ok(o) => {
                overview = o;
                error = None;
            }
            Err(e) => error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_shows_the_summary_and_one_row_per_service() {
        let o = serde_json::json!({
            "version": 1, "broker": {"version": "0.1.0", "draining": false},
            "interval_seconds": 1.0,
            "services": [
                {"name": "echo", "workers_idle": 1, "workers_busy": 2, "queued": 3,
                 "requests_per_second": 120.5, "replies_per_second": 120.0,
                 "queue_wait_p50_ms": 0.25, "queue_wait_p99_ms": null, "expired_total": 4,
                 "history": [1.0]}
            ],
            "requests": {"per_second": 120.5, "replies_per_second": 120.0, "queued": 3,
                         "queued_bytes": 10, "dropped": {}, "dropped_per_second": 0.0,
                         "history": []},
            "connections": {"peers": 5, "clients_paused": 0, "pauses": {}},
            "pair": null, "titanic": null, "topics": null, "gateway": null
        });
        let t = text(&o);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("requests 120.5/s") && lines[0].contains("peers 5"),
            "{t}"
        );
        assert!(lines[2].starts_with("SERVICE"), "{t}");
        let row: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            row,
            ["echo", "3", "2", "3", "120.5", "0.25", "ms", "-", "4"]
        );
    }
}
