//! Synthetic apartment complexes at registry scale, for `examples/community_search_bench.rs`
//! and the `search` load scenario: every complex of the registry fixture repeated with brand
//! prefixes and phase suffixes ("래미안…", "… 2차"), so names, addresses and their Korean
//! substrings are distributed as in the real registry. Plus the search indexes, which both
//! drop and rebuild to measure search without and with them.

use sqlx::PgConnection;

use super::store;
use crate::error::AppResult;

/// Queries people type: complex names and brands, districts and dongs, 2 to 5 characters.
pub const QUERIES: &[&str] =
    &["파장", "래미안", "수원", "현대", "정자동", "푸르지오", "센트럴", "주공", "분당구", "삼익", "힐스테이트", "성남"];

/// The search indexes of the schema (as the migrations create them): trigrams for queries of
/// 3+ characters, character pairs for 2.
pub const SEARCH_INDEXES: &[(&str, &str)] = &[
    (
        "communities_name_trgm_idx",
        "create index if not exists communities_name_trgm_idx on communities using gin (name gin_trgm_ops)",
    ),
    (
        "communities_address_trgm_idx",
        "create index if not exists communities_address_trgm_idx on communities using gin (address gin_trgm_ops)",
    ),
    (
        "communities_name_bigram_idx",
        "create index if not exists communities_name_bigram_idx on communities using gin (name_bigrams)",
    ),
    (
        "communities_address_bigram_idx",
        "create index if not exists communities_address_bigram_idx on communities using gin (address_bigrams)",
    ),
];

/// Name, address and legal-dong code of every complex of a registry export
/// (`tests/fixtures/apartments-gyeonggi.json`: `kaptName`, `as1`..`as4`, `bjdCode`).
pub struct Templates {
    pub names: Vec<String>,
    pub addresses: Vec<String>,
    pub bjd: Vec<String>,
}

impl Templates {
    pub fn from_json(raw: &str) -> anyhow::Result<Self> {
        let rows: Vec<serde_json::Value> = serde_json::from_str(raw)?;
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").trim().to_owned();
        let names: Vec<String> = rows.iter().map(|r| text(r, "kaptName")).collect();
        let addresses = rows
            .iter()
            .map(|r| {
                let parts = ["as1", "as2", "as3", "as4"].map(|k| text(r, k));
                parts.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
            })
            .collect();
        let bjd = rows.iter().map(|r| text(r, "bjdCode")).collect();
        anyhow::ensure!(!names.is_empty(), "the registry export holds no complexes");
        Ok(Templates { names, addresses, bjd })
    }
}

/// Inserts complexes `from..to` (external code `{code_prefix}{i:09}`); complexes already
/// there are kept. Complex `i` is always the same name and address. Returns rows inserted.
pub async fn insert(db: &mut PgConnection, t: &Templates, code_prefix: &str, from: i64, to: i64) -> AppResult<u64> {
    store::insert_synthetic_apartments(db, (&t.names, &t.addresses, &t.bjd), code_prefix, from, to).await
}

/// Drops the search indexes (searches then scan the table), and refreshes the statistics.
pub async fn drop_search_indexes(db: &mut PgConnection) -> AppResult<()> {
    let names: Vec<&str> = SEARCH_INDEXES.iter().map(|(n, _)| *n).collect();
    store::drop_indexes(db, &names).await
}

/// Creates whichever search index is missing, and refreshes the statistics.
pub async fn create_search_indexes(db: &mut PgConnection) -> AppResult<()> {
    let ddl: Vec<&str> = SEARCH_INDEXES.iter().map(|(_, d)| *d).collect();
    store::create_indexes(db, &ddl).await
}

/// How many of the search indexes exist.
pub async fn search_indexes_present(db: &mut PgConnection) -> AppResult<i64> {
    let names: Vec<&str> = SEARCH_INDEXES.iter().map(|(n, _)| *n).collect();
    store::count_indexes(db, &names).await
}
