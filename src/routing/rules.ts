// The routing rules in force: the file's `Routes` as the initial set, overlaid by what PUT and DELETE
// /routes/{name} wrote into the routes database (a rule put through the API replaces the file's entry of the
// same name, a rule deleted through it stays deleted across restarts even if the file still lists it).
// Also where a destination name points: OrthancPeers, DicomModalities or DicomWeb.Servers (one namespace: a name in
// two of them is refused).
import { z } from 'zod';
import { RouteRuleSchema } from '../config/routes-schema.ts';
import type { RouteRuleConfig } from '../config/types.ts';
import { XferError } from '../errors.ts';
import { describeIssue, readStored } from '../util/stored-json.ts';
import type { RoutesDb } from './db.ts';

/** The names a rule may send to. */
export interface RouteTargets {
  isPeer(name: string): boolean;
  isModality(name: string): boolean;
  /** A server of DicomWeb.Servers; absent: none. */
  isDicomWeb?(name: string): boolean;
}

export type DestinationKind = 'peer' | 'modality' | 'dicomweb';

const KIND_WORDS: Record<DestinationKind, string> = {
  peer: 'a peer (OrthancPeers)',
  modality: 'a modality (DicomModalities)',
  dicomweb: 'a DICOMweb server (DicomWeb.Servers)',
};

export function isDestinationKind(k: string): k is DestinationKind {
  return Object.hasOwn(KIND_WORDS, k);
}

/** Where `name` points, or why it cannot be used (unknown, or in two of the lists: ambiguous). */
export function destinationKind(name: string, targets: RouteTargets): DestinationKind | string {
  const kinds: DestinationKind[] = [];
  if (targets.isPeer(name)) kinds.push('peer');
  if (targets.isModality(name)) kinds.push('modality');
  if (targets.isDicomWeb?.(name)) kinds.push('dicomweb');
  const [only, second] = kinds;
  if (only !== undefined && second === undefined) return only;
  if (only !== undefined) return `"${name}" is both ${kinds.map((k) => KIND_WORDS[k]).join(' and ')}: rename one`;
  return `"${name}" is neither a peer (OrthancPeers) nor a modality (DicomModalities) nor a DICOMweb server (DicomWeb.Servers)`;
}

/** The first problem of a rule's destinations, naming the rule and the name; undefined when all resolve. */
export function ruleProblem(rule: RouteRuleConfig, targets: RouteTargets): string | undefined {
  for (const name of [...rule.Send, ...rule.Alternate]) {
    const kind = destinationKind(name, targets);
    if (!isDestinationKind(kind)) return `routing rule "${rule.Name}": ${kind}`;
  }
  return undefined;
}

/** A rule from a request body: checked by the configuration's schema; BadRequest naming the field otherwise. */
export function parseRule(body: unknown): RouteRuleConfig {
  const r = RouteRuleSchema.safeParse(body);
  if (!r.success) throw new XferError('BadRequest', `routing rule: ${describeIssue(r.error)}`);
  return r.data;
}

const RuleRow = z.object({ name: z.string(), rule: z.string().nullable() });

export type RuleSource = 'file' | 'api';

export class RuleSet {
  readonly #db: RoutesDb;
  readonly #file: readonly RouteRuleConfig[];
  #rules: RouteRuleConfig[] = [];
  readonly #source = new Map<string, RuleSource>();

  constructor(db: RoutesDb, fileRules: readonly RouteRuleConfig[]) {
    this.#db = db;
    this.#file = fileRules;
    this.#reload();
  }

  #reload(): void {
    const byName = new Map<string, RouteRuleConfig>();
    this.#source.clear();
    for (const r of this.#file) {
      byName.set(r.Name, r);
      this.#source.set(r.Name, 'file');
    }
    for (const raw of this.#db.prepare('SELECT name, rule FROM rules ORDER BY name').all()) {
      const row = RuleRow.parse(raw);
      if (row.rule === null) {
        byName.delete(row.name);
        this.#source.delete(row.name);
        continue;
      }
      byName.set(row.name, readStored(RouteRuleSchema, row.rule, `routing rule ${row.name}`));
      this.#source.set(row.name, 'api');
    }
    this.#rules = [...byName.values()];
  }

  all(): readonly RouteRuleConfig[] {
    return this.#rules;
  }

  get(name: string): RouteRuleConfig | undefined {
    return this.#rules.find((r) => r.Name === name);
  }

  source(name: string): RuleSource | undefined {
    return this.#source.get(name);
  }

  /** Creates or replaces a rule (durable on return). */
  put(rule: RouteRuleConfig): void {
    this.#db
      .prepare(
        `INSERT INTO rules (name, rule, updated_at) VALUES (?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET rule = excluded.rule, updated_at = excluded.updated_at`,
      )
      .run(rule.Name, JSON.stringify(rule), Date.now());
    this.#reload();
  }

  /** Deletes a rule (a file rule too, for good); false when there is none of that name. */
  delete(name: string): boolean {
    if (!this.get(name)) return false;
    this.#db
      .prepare(
        `INSERT INTO rules (name, rule, updated_at) VALUES (?, NULL, ?)
         ON CONFLICT(name) DO UPDATE SET rule = NULL, updated_at = excluded.updated_at`,
      )
      .run(name, Date.now());
    this.#reload();
    return true;
  }
}
