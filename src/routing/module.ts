// Opens the routing of a node: the routes database (<StorageDirectory>/routes.sqlite), the rules in force
// (the file's, overlaid by the API's), and the route engine, which is every ingest path's ArrivalSink. A
// rule of the file that names no peer or modality stops the start, naming the rule and the name.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/types.ts';
import type { Peers } from '../peers/peers.ts';
import type { Store } from '../store/types.ts';
import { openRoutesDb } from './db.ts';
import { RouteEngine, type RouteObserver } from './engine.ts';
import { ruleProblem, RuleSet, type RouteTargets } from './rules.ts';

export interface RoutingOptions {
  config: Config;
  store: Store;
  logger: Logger;
  peers: Pick<Peers, 'get'>;
  observer?: RouteObserver;
}

export interface Routing {
  engine: RouteEngine;
  close(): void;
}

export function openRouting(opts: RoutingOptions): Routing {
  const { config, peers } = opts;
  const logger = opts.logger.child({ module: 'routing' });
  const targets: RouteTargets = {
    isPeer: (name) => peers.get(name) !== undefined,
    isModality: (name) => Object.hasOwn(config.DicomModalities, name),
    isDicomWeb: (name) => Object.hasOwn(config.DicomWeb.Servers, name),
  };
  const db = openRoutesDb(join(config.StorageDirectory, 'routes.sqlite'));
  try {
    const rules = new RuleSet(db, config.Routes);
    for (const rule of rules.all()) {
      const problem = ruleProblem(rule, targets);
      if (problem === undefined) continue;
      // A rule of the file is configuration: a wrong name stops the start. One written through the API
      // may have lost its peer since (DELETE /peers): its sends fail, saying why.
      if (rules.source(rule.Name) === 'file') throw new Error(`Routes: ${problem}`);
      logger.warn({ rule: rule.Name }, problem);
    }
    const engine = new RouteEngine({
      db,
      rules,
      store: opts.store,
      targets,
      stableAgeSeconds: config.StableAge,
      logger,
      ...(opts.observer ? { observer: opts.observer } : {}),
    });
    return {
      engine,
      close() {
        engine.close();
        db.close();
      },
    };
  } catch (e) {
    db.close();
    throw e;
  }
}
