// Whether a routing rule takes an arrived instance: its Match patterns (main tags, CallingAet, Origin)
// against the instance's main tags and origin. Pure functions.
import type { RouteRuleConfig } from '../config/types.ts';
import type { ArrivalOrigin } from './arrivals.ts';

const cache = new Map<string, RegExp>();

/** A pattern with * (any run) and ? (one character), matched whole and case-insensitively. */
export function wildcardMatch(pattern: string, value: string): boolean {
  let re = cache.get(pattern);
  if (!re) {
    const body = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
    re = new RegExp(`^${body}$`, 'isu');
    if (cache.size > 1000) cache.clear();
    cache.set(pattern, re);
  }
  return re.test(value);
}

/** How an origin is written in a rule and in GET /routes: dicom, rest, peer:NAME. */
export function originText(o: ArrivalOrigin): string {
  return o.kind === 'peer' ? `peer:${o.peer}` : o.kind;
}

/** The rule's Match against an instance: every pattern must hold; an absent tag matches only "*". */
export function ruleMatches(rule: RouteRuleConfig, origin: ArrivalOrigin, tags: Readonly<Record<string, string>>): boolean {
  for (const [key, pattern] of Object.entries(rule.Match)) {
    let value: string | undefined;
    if (key === 'Origin') value = originText(origin);
    else if (key === 'CallingAet') value = origin.kind === 'dicom' ? origin.callingAet : undefined;
    else value = tags[key];
    if (value === undefined) {
      if (pattern !== '*') return false;
      continue;
    }
    if (!wildcardMatch(pattern, value)) return false;
  }
  return true;
}
