//! `conclave bench`, run as a user would, small and in mock mode so it is
//! quick. It checks the report's shape and that work was done; it never
//! asserts a timing threshold (the machine decides those, not the code).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// The load table's rows: every line after the header whose first column is a number.
fn load_rows(report: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = report.lines().skip_while(|l| !l.trim_start().starts_with("clients "));
    let header: Vec<String> =
        lines.next().expect("a load table header").split_whitespace().map(str::to_owned).collect();
    let rows = lines
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .take_while(|cols| cols.first().is_some_and(|c| c.parse::<usize>().is_ok()))
        .collect();
    (header, rows)
}

#[test]
fn bench_reports_every_client_count() {
    let output = Command::new(BIN)
        .args(["bench", "--clients", "1,2", "--mails", "5", "--mode", "mock"])
        .output()
        .expect("run conclave bench");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}\n{report}\n{}", output.status, String::from_utf8_lossy(&output.stderr));

    assert!(report.contains("MOCK (INSECURE"), "the mode is named:\n{report}");
    assert!(report.contains("machine: "), "{report}");
    assert!(report.contains("1. Start-up"), "{report}");
    assert!(report.contains("2. In-process cryptography"), "{report}");
    assert!(report.contains("crypto-bound throughput"), "{report}");

    let (header, rows) = load_rows(&report);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (mails, rate, p50, p99) = (column("mails"), column("mails/s"), column("p50_ms"), column("p99_ms"));
    let clients: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(clients, ["1", "2"], "one row per client count:\n{report}");
    for (row, n) in rows.iter().zip([1usize, 2]) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert_eq!(row[mails].parse::<usize>().unwrap(), 5 * n, "every mail is counted, warm-up excluded");
        assert!(row[rate].parse::<f64>().unwrap() > 0.0, "mails/s is not zero: {row:?}");
        let (p50, p99) = (row[p50].parse::<f64>().unwrap(), row[p99].parse::<f64>().unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "percentiles are ordered: {row:?}");
    }
    assert!(report.contains("OK: 15 mails"), "{report}");
}

#[test]
fn bench_help_documents_flags_and_exit_codes() {
    let output = Command::new(BIN).args(["bench", "--help"]).output().expect("run conclave bench --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--clients", "--mails", "--body-bytes", "--mode", "Exit codes"] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
}

#[test]
fn bench_refuses_bad_flags_with_exit_2() {
    let output = Command::new(BIN).args(["bench", "--clients", "0", "--mode", "mock"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn bench_start_up_in_simulation_mode_shows_each_step_and_its_anchors() {
    let output = Command::new(BIN)
        .args(["bench", "--clients", "1", "--mails", "2", "--startups", "2", "--crypto-rounds", "2"])
        .output()
        .expect("run conclave bench");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}\n{report}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    for row in [
        "load: key, read + hash once into a sealed memfd, sign",
        "store: open the store, read the platform secret",
        "start: spawn from the memfd, limits, sandbox, keys, evidence",
        "alone: SHA-256 of the binary",
        "alone: read + hash + copy into a sealed memfd",
        "total / anchor (medians)",
    ] {
        assert!(report.contains(row), "{row:?} missing:\n{report}");
    }

    // A signed binary that is not there is an error that names it.
    let output = Command::new(BIN)
        .args(["bench", "--clients", "1", "--mails", "1", "--startups", "1", "--enclave", "/nonexistent/enclave"])
        .output()
        .expect("run conclave bench");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/enclave"));
}
