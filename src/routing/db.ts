// The routes database (<StorageDirectory>/routes.sqlite): every arrival with its origin, each match of a
// rule with an instance (once per rule and instance), the batches a rule makes of them and the job of each
// destination, and the rules written through the REST API. Schema as numbered migrations.
import { openSqlite, type Sqlite } from '../util/sqlite.ts';

export type RoutesDb = Sqlite;

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE arrivals (
    instance TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    peer TEXT,
    calling_aet TEXT,
    called_aet TEXT,
    remote_ip TEXT,
    http_user TEXT,
    received_at INTEGER NOT NULL,
    -- Not matched yet (the store's tags could not be read): 0 for a new instance, 1 for a repeat.
    pending_match INTEGER
  ) WITHOUT ROWID;
  CREATE INDEX arrivals_pending ON arrivals(pending_match) WHERE pending_match IS NOT NULL;
  CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL,
    alternate INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_error TEXT
  );
  CREATE INDEX batches_state ON batches(state);
  CREATE TABLE matches (
    rule TEXT NOT NULL,
    instance TEXT NOT NULL,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL,
    batch INTEGER REFERENCES batches(id),
    matched_at INTEGER NOT NULL,
    PRIMARY KEY (rule, instance)
  ) WITHOUT ROWID;
  CREATE INDEX matches_waiting ON matches(state, rule, group_key);
  CREATE INDEX matches_batch ON matches(batch);
  CREATE TABLE sends (
    batch INTEGER NOT NULL REFERENCES batches(id),
    destination TEXT NOT NULL,
    alternate INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    job TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (batch, destination)
  ) WITHOUT ROWID;
  CREATE INDEX sends_state ON sends(state);
  CREATE TABLE rules (
    name TEXT PRIMARY KEY,
    rule TEXT,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
];

export function openRoutesDb(path: string): RoutesDb {
  return openSqlite(path, MIGRATIONS);
}
