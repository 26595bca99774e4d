//! A fake enclave that speaks channel version 99: it answers the host's
//! Hello with a Hello of that version, then waits for the host to give up.

use std::io::{Read, Write};

fn main() {
    // A frame of 3 bytes: the Hello variant (0), version 99, an empty sandbox report.
    let hello = [0, 0, 0, 3, 0, 99, 0];
    let mut stdout = std::io::stdout();
    if stdout.write_all(&hello).and_then(|()| stdout.flush()).is_err() {
        std::process::exit(1);
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
