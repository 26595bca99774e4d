//! The throwaway PostgreSQL cluster itself: it starts, serves, dumps and restores.

#[test]
fn a_throwaway_cluster_starts_dumps_and_restores() {
    let Some(pg) = conclave_test_support::postgres::TempPostgres::start() else { return };
    let url = pg.database("harness");
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
    let dump = pg.dump("harness");
    assert!(!dump.is_empty());
    pg.restore("harness", &dump);
}
