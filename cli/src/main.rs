//! `domo`: the command-line tool (work in progress).
fn main() {}
