//! Polls' queries, on both engines. One person, one vote is the database's: a voter has one
//! row per poll (`poll_voters`, its primary key), taken first by every vote, and their choices
//! (`poll_choices`) are replaced in the same transaction, with the poll's maximum checked
//! there. A hundred votes at once from one person's tabs, or from two nodes, leave one vote.

use super::protocol::{check_choices, PollError, PollSpec, ShowResults};
use crate::store::{now_ms, on_pool, BeginWrite, Store, StoreError};

/// A poll as stored: what its creator asked for, and who, where and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub id: i64,
    pub room_id: i64,
    pub creator_key: String,
    pub creator_name: String,
    pub spec: PollSpec,
    pub closed_at: Option<i64>,
    pub created_at: i64,
}

impl Poll {
    /// Closed by hand, or past its closing time at `now`.
    pub fn closed(&self, now: i64) -> bool {
        self.closed_at.is_some() || self.spec.closes_at.is_some_and(|at| at <= now)
    }
}

/// Who voted: a person's identity key and the name shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter<'a> {
    pub key: &'a str,
    pub name: &'a str,
}

/// A poll's counts: per option, and how many people voted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub options: Vec<u64>,
    pub voters: u64,
}

/// Why a poll query failed: the poll's rules, or the store.
#[derive(Debug, thiserror::Error)]
pub enum PollStoreError {
    #[error(transparent)]
    Rule(#[from] PollError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PollStoreError {
    fn from(error: sqlx::Error) -> Self {
        PollStoreError::Store(error.into())
    }
}

/// A row of `polls`, as read.
type PollRow = (i64, i64, String, String, String, i64, i64, String, Option<i64>, Option<i64>, i64);

const POLL_COLUMNS: &str = "id, room_id, creator_key, creator_name, question, max_choices, anonymous, show_results,
     closes_at, closed_at, created_at";

fn poll(row: PollRow, options: Vec<String>) -> Poll {
    let (
        id,
        room_id,
        creator_key,
        creator_name,
        question,
        max_choices,
        anonymous,
        show,
        closes_at,
        closed_at,
        created_at,
    ) = row;
    let spec = PollSpec {
        question,
        options,
        max_choices: max_choices.clamp(1, u32::MAX as i64) as u32,
        anonymous: anonymous != 0,
        // The column's CHECK allows only the three.
        show_results: ShowResults::parse(&show).unwrap_or(ShowResults::Closed),
        closes_at,
    };
    Poll { id, room_id, creator_key, creator_name, spec, closed_at, created_at }
}

impl Store {
    /// Store a poll in `room_id`; the spec is checked here too.
    pub async fn create_poll(&self, room_id: i64, creator: &Voter<'_>, spec: PollSpec) -> Result<Poll, PollStoreError> {
        let now = now_ms();
        let spec = spec.checked(now)?;
        let insert = "INSERT INTO polls (room_id, creator_key, creator_name, question, max_choices, anonymous,
                          show_results, closes_at, created_at)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";
        let option = "INSERT INTO poll_options (poll_id, idx, text) VALUES ($1, $2, $3)";
        let id: i64 = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(insert)
                .bind(room_id)
                .bind(creator.key)
                .bind(creator.name)
                .bind(&spec.question)
                .bind(i64::from(spec.max_choices))
                .bind(i64::from(spec.anonymous))
                .bind(spec.show_results.as_str())
                .bind(spec.closes_at)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            for (idx, text) in spec.options.iter().enumerate() {
                sqlx::query(option).bind(id).bind(idx as i64).bind(text).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            id
        });
        Ok(Poll {
            id,
            room_id,
            creator_key: creator.key.to_owned(),
            creator_name: creator.name.to_owned(),
            spec,
            closed_at: None,
            created_at: now,
        })
    }

    /// A poll with its options.
    pub async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        let select = format!("SELECT {POLL_COLUMNS} FROM polls WHERE id = $1");
        let options = "SELECT text FROM poll_options WHERE poll_id = $1 ORDER BY idx";
        let (row, options): (Option<PollRow>, Vec<String>) = on_pool!(self, pool => (
            sqlx::query_as(&select).bind(id).fetch_optional(pool).await?,
            sqlx::query_scalar(options).bind(id).fetch_all(pool).await?,
        ));
        Ok(row.map(|row| poll(row, options)))
    }

    /// Record `voter`'s choices in a poll, replacing any earlier ones: checked against the poll
    /// (open, known options, at most its maximum) in the same transaction that writes them.
    pub async fn vote(&self, poll_id: i64, voter: &Voter<'_>, choices: Vec<u32>) -> Result<Vec<u32>, PollStoreError> {
        let now = now_ms();
        // On PostgreSQL the poll's row is read FOR SHARE: a close that commits first is seen,
        // and a close waits for the votes already under way.
        let read = self.pick(
            "SELECT max_choices, closes_at, closed_at, (SELECT COUNT(*) FROM poll_options WHERE poll_id = $1)
             FROM polls WHERE id = $1",
            "SELECT max_choices, closes_at, closed_at, (SELECT COUNT(*) FROM poll_options WHERE poll_id = $1)
             FROM polls WHERE id = $1 FOR SHARE",
        );
        let voter_row = "INSERT INTO poll_voters (poll_id, voter_key, voter_name, voted_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (poll_id, voter_key) DO UPDATE SET voter_name = excluded.voter_name,
                             voted_at = excluded.voted_at";
        let clear = "DELETE FROM poll_choices WHERE poll_id = $1 AND voter_key = $2";
        let choose = "INSERT INTO poll_choices (poll_id, voter_key, option_idx) VALUES ($1, $2, $3)";
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<(i64, Option<i64>, Option<i64>, i64)> =
                sqlx::query_as(read).bind(poll_id).fetch_optional(&mut *tx).await?;
            let Some((max_choices, closes_at, closed_at, options)) = found else {
                return Err(PollError::UnknownPoll.into());
            };
            if closed_at.is_some() || closes_at.is_some_and(|at| at <= now) {
                return Err(PollError::Closed.into());
            }
            let choices = check_choices(choices, options as usize, max_choices.clamp(1, u32::MAX as i64) as u32)?;
            // The voter's row first: a second vote of theirs waits here for this one.
            sqlx::query(voter_row).bind(poll_id).bind(voter.key).bind(voter.name).bind(now).execute(&mut *tx).await?;
            sqlx::query(clear).bind(poll_id).bind(voter.key).execute(&mut *tx).await?;
            for &choice in &choices {
                sqlx::query(choose).bind(poll_id).bind(voter.key).bind(i64::from(choice)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(choices)
        })
    }

    /// Close a poll now. False when it was closed already (or does not exist).
    pub async fn close_poll(&self, poll_id: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE polls SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL";
        let done =
            on_pool!(self, pool => sqlx::query(sql).bind(now_ms()).bind(poll_id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// A poll's counts, per option (of `options`), and its voters.
    pub async fn poll_counts(&self, poll_id: i64, options: usize) -> Result<Counts, StoreError> {
        let per_option = "SELECT option_idx, COUNT(*) FROM poll_choices WHERE poll_id = $1 GROUP BY option_idx";
        let voters = "SELECT COUNT(*) FROM poll_voters WHERE poll_id = $1";
        let (rows, voters): (Vec<(i64, i64)>, i64) = on_pool!(self, pool => (
            sqlx::query_as(per_option).bind(poll_id).fetch_all(pool).await?,
            sqlx::query_scalar(voters).bind(poll_id).fetch_one(pool).await?,
        ));
        let mut counts = vec![0u64; options];
        for (option, count) in rows {
            if let Some(slot) = counts.get_mut(option as usize) {
                *slot = count as u64;
            }
        }
        Ok(Counts { options: counts, voters: voters as u64 })
    }

    /// The options `voter_key` chose in a poll (none: not voted).
    pub async fn choices_of(&self, poll_id: i64, voter_key: &str) -> Result<Vec<u32>, StoreError> {
        let sql = "SELECT option_idx FROM poll_choices WHERE poll_id = $1 AND voter_key = $2 ORDER BY option_idx";
        let rows: Vec<i64> =
            on_pool!(self, pool => sqlx::query_scalar(sql).bind(poll_id).bind(voter_key).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|c| c as u32).collect())
    }

    /// Who chose what, per option, by name, for a named poll (never asked of an anonymous one).
    pub async fn named_votes(&self, poll_id: i64, options: usize) -> Result<Vec<Vec<String>>, StoreError> {
        let sql = "SELECT c.option_idx, v.voter_name FROM poll_choices c
                   JOIN poll_voters v ON v.poll_id = c.poll_id AND v.voter_key = c.voter_key
                   WHERE c.poll_id = $1 ORDER BY c.option_idx, v.voter_name";
        let rows: Vec<(i64, String)> = on_pool!(self, pool => sqlx::query_as(sql).bind(poll_id).fetch_all(pool).await?);
        let mut names = vec![Vec::new(); options];
        for (option, name) in rows {
            if let Some(slot) = names.get_mut(option as usize) {
                slot.push(name);
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::each_engine;

    fn spec(options: &[&str], max_choices: u32) -> PollSpec {
        PollSpec {
            question: "Lunch?".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            max_choices,
            anonymous: false,
            show_results: ShowResults::Always,
            closes_at: None,
        }
    }

    const ADA: Voter<'static> = Voter { key: "u:1", name: "ada" };
    const BO: Voter<'static> = Voter { key: "g:b0", name: "bo (guest b0)" };

    #[tokio::test]
    async fn a_vote_replaces_the_voters_last_one_and_counts_add_up() {
        for store in each_engine().await {
            let engine = store.engine();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let made = store.create_poll(lobby.id, &ADA, spec(&["pizza", "soup", "salad"], 2)).await.unwrap();
            assert_eq!(store.poll(made.id).await.unwrap().as_ref(), Some(&made), "{engine:?}: reads back as made");
            store.vote(made.id, &ADA, vec![0]).await.unwrap();
            store.vote(made.id, &BO, vec![2, 0]).await.unwrap();
            store.vote(made.id, &ADA, vec![1]).await.unwrap();
            let counts = store.poll_counts(made.id, 3).await.unwrap();
            assert_eq!(counts, Counts { options: vec![1, 1, 1], voters: 2 }, "{engine:?}");
            assert_eq!(store.choices_of(made.id, BO.key).await.unwrap(), vec![0, 2]);
            let names = store.named_votes(made.id, 3).await.unwrap();
            assert_eq!(
                names,
                vec![vec!["bo (guest b0)".to_owned()], vec!["ada".to_owned()], vec!["bo (guest b0)".to_owned()]]
            );

            // Refused, and nothing changed: too many, unknown, none, an unknown poll.
            let refused = [
                (made.id, vec![0, 1, 2], "too_many_choices"),
                (made.id, vec![3], "unknown_option"),
                (made.id, vec![], "invalid_field"),
                (made.id + 99, vec![0], "unknown_poll"),
            ];
            for (poll, choices, code) in refused {
                match store.vote(poll, &ADA, choices).await {
                    Err(PollStoreError::Rule(rule)) => assert_eq!(rule.code(), code, "{engine:?}"),
                    other => panic!("{engine:?}: expected {code}, got {other:?}"),
                }
            }
            assert_eq!(store.poll_counts(made.id, 3).await.unwrap(), counts);

            // Closed: votes are refused; closing twice says so.
            assert!(store.close_poll(made.id).await.unwrap());
            assert!(!store.close_poll(made.id).await.unwrap());
            assert!(matches!(store.vote(made.id, &BO, vec![1]).await, Err(PollStoreError::Rule(PollError::Closed))));
            assert!(store.poll(made.id).await.unwrap().unwrap().closed(now_ms()));
        }
    }

    /// A hundred votes at once from one person (tabs, or nodes on one PostgreSQL) leave one.
    #[tokio::test]
    async fn a_hundred_votes_at_once_from_one_person_leave_one_vote() {
        for store in each_engine().await {
            let engine = store.engine();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let single = store.create_poll(lobby.id, &ADA, spec(&["a", "b", "c"], 1)).await.unwrap();
            let multiple = store.create_poll(lobby.id, &ADA, spec(&["a", "b", "c"], 2)).await.unwrap();
            let mut votes = Vec::new();
            for i in 0..100u32 {
                let store = store.store.clone();
                let (single, multiple) = (single.id, multiple.id);
                votes.push(tokio::spawn(async move {
                    let one = store.vote(single, &BO, vec![i % 3]).await;
                    let two = store.vote(multiple, &BO, vec![i % 3, (i + 1) % 3]).await;
                    (one.is_ok(), two.is_ok())
                }));
            }
            for vote in votes {
                assert_eq!(vote.await.unwrap(), (true, true), "{engine:?}: every vote was taken in turn");
            }
            let counts = store.poll_counts(single.id, 3).await.unwrap();
            assert_eq!((counts.voters, counts.options.iter().sum::<u64>()), (1, 1), "{engine:?}: one vote");
            let counts = store.poll_counts(multiple.id, 3).await.unwrap();
            assert_eq!((counts.voters, counts.options.iter().sum::<u64>()), (1, 2), "{engine:?}: one vote of two");
        }
    }
}
