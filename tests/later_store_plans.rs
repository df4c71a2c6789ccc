//! The workers plan their store statements once (generic plans, which cannot see a LIMIT's
//! value and guess a tenth of the rows). With a large backlog the claim must still reach its
//! rows through the indexes: with the earlier session options its plan joined the picked ids
//! by a hash over a sequential scan of every job, and a backlog drained at a few hundred
//! jobs a second (this test fails with those options).

mod common;

use common::*;
use pglater::later::store::{CLAIM_SQL, WORKER_SESSION_OPTIONS, migrations};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ENDED_JOBS: i64 = 150_000;
const QUEUED_JOBS: i64 = 150_000;

async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect to the store");
    tokio::spawn(connection);
    client
}

/// The plan PostgreSQL would run for `EXECUTE claim(...)` in `client`'s session, as text.
async fn claim_plan(client: &Client) -> String {
    client
        .batch_execute(&format!("PREPARE claim(text, int8) AS {CLAIM_SQL}"))
        .await
        .expect("prepare the claim");
    client
        .simple_query("EXPLAIN EXECUTE claim('an-instance', 8)")
        .await
        .expect("explain the claim")
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_claims_generic_plan_reads_the_queue_index_on_a_large_jobs_table() {
    let url = pg().fresh_store("plans_store");
    let config: tokio_postgres::Config = url.parse().unwrap();
    let mut admin = connect(&config).await;
    migrations::migrate(&mut admin).await.expect("migrate");
    admin
        .batch_execute(&format!(
            "INSERT INTO pglater.jobs (id, owner, database, script, state, run_at, finished_at)
             SELECT g, 'user' || (g % 50), 'app', 'SELECT 1'::bytea,
                    CASE WHEN g <= {ENDED_JOBS} THEN 'succeeded' ELSE 'queued' END,
                    now() - interval '1 hour',
                    CASE WHEN g <= {ENDED_JOBS} THEN now() END
               FROM generate_series(1, {ENDED_JOBS} + {QUEUED_JOBS}) g;
             ANALYZE pglater.jobs;"
        ))
        .await
        .expect("fill the jobs table");

    let mut worker_config = config.clone();
    worker_config.options(WORKER_SESSION_OPTIONS);
    let worker = connect(&worker_config).await;
    let mode: String = worker
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        mode, "force_generic_plan",
        "the options did not reach the session"
    );

    let plan = claim_plan(&worker).await;
    assert!(
        plan.contains("jobs_queue"),
        "the queue index is not read:\n{plan}"
    );
    assert!(
        plan.contains("jobs_pkey"),
        "claimed ids are not found by key:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan"),
        "a sequential scan per claim:\n{plan}"
    );
    assert!(!plan.contains("Sort"), "a sort per claim:\n{plan}");

    // The claim itself takes the oldest due jobs.
    let claimed = worker
        .simple_query("EXECUTE claim('an-instance', 8)")
        .await
        .expect("claim")
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(claimed, 8);
    let first_ids: Vec<i64> = admin
        .query(
            "SELECT id FROM pglater.jobs WHERE state = 'running' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        first_ids,
        (ENDED_JOBS + 1..=ENDED_JOBS + 8).collect::<Vec<_>>()
    );
}
