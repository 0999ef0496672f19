import { readFileSync } from 'node:fs';
import { assert } from './limits.js';
import { isCurrency, makeFxTable, type Currency, type FxTable } from './money.js';
import { makeProductTable, type Channel, type Product, type ProductTable } from './products.js';

export interface StandInConfig {
  currency: string;
  /** Most a card may be approved for in stand-in during one outage of its unit, in minor units. */
  perCardMinor: number;
  /** Most each channel may be approved for in stand-in during one outage of a unit, in minor units. */
  perChannelMinor: Record<Channel, number>;
}

// The topology file describes a whole cluster: the gateway, every unit (id, URL,
// data folder, ring weight), the product parameters and the exchange rates.
// Scaling out is a configuration change: add a unit here and restart.

export interface UnitSpec {
  id: string;
  /** Where the gateway reaches the unit; a unit may live on another host. */
  url: string;
  port: number;
  dataDir: string;
  weight: number;
  /** The unit's gray instance, over the same store; absent when the unit runs none. */
  gray?: { url: string; port: number };
  /**
   * The unit's second copy (HA pair), with its own store: the "other data
   * center". Both copies start as standby; the gateway promotes one.
   */
  standby?: { url: string; port: number; dataDir: string };
  /**
   * Port for the unit's standby copy when a launcher runs it as an HA pair
   * (npm start -- --ha writes `standby` from it). Apart from `standby` because
   * a template also lists gray ports, and a unit runs one or the other.
   */
  standbyPort?: number;
}

/**
 * What a release changes against the base parameters of the topology: product
 * parameters by product (a new fee, a changed limit, a new risk rule).
 */
export interface ReleaseParameters {
  products?: Record<string, Partial<Omit<Product, 'name' | 'iin'>>>;
}

export interface ReleasesSection {
  /** Release names of the two instances of each unit when the cluster starts. */
  stable: string;
  gray: string;
  /** Parameter changes by release name; a release not listed runs the base parameters. */
  parameters: Record<string, ReleaseParameters>;
}

export interface ScoreBand {
  /** Lowest credit-evaluation score of the band. */
  minScore: number;
  creditLimitMinor: number;
}

export interface TopologyFile {
  gateway: { host: string; port: number };
  units: UnitSpec[];
  ring: { vnodesPerWeight: number };
  businessDayUtcOffsetMinutes: number;
  products: Record<string, Omit<Product, 'name'>>;
  fx: { pivot: string; rates: Record<string, string> };
  issuance: { defaultProduct: string; currency: string; scoreBands: ScoreBand[] };
  demo: { accounts: number };
  releases?: ReleasesSection;
  /** Stand-in limits: what the gateway may approve itself while both copies of an HA unit are down. */
  standIn?: StandInConfig;
}

export interface Topology {
  file: TopologyFile;
  products: ProductTable;
  fx: FxTable;
}

/** The products as a release runs them: the base parameters with the release's changes applied. */
export function releaseProducts(file: TopologyFile, release: string): ProductTable {
  const changes = file.releases?.parameters[release]?.products ?? {};
  for (const name of Object.keys(changes)) assert(name in file.products, `release ${release} changes a configured product (${name})`);
  const products: TopologyFile['products'] = {};
  for (const [name, base] of Object.entries(file.products)) products[name] = { ...base, ...changes[name] } as Omit<Product, 'name'>;
  return makeProductTable(products);
}

export function loadTopology(path: string): Topology {
  const file = JSON.parse(readFileSync(path, 'utf8')) as TopologyFile;
  return makeTopology(file);
}

export function makeTopology(file: TopologyFile): Topology {
  assert(Array.isArray(file.units) && file.units.length > 0, 'topology has units');
  const ids = new Set<string>();
  for (const unit of file.units) {
    assert(/^[a-z0-9-]{1,32}$/.test(unit.id), `unit id "${unit.id}" is lowercase letters, digits and dashes`);
    assert(!ids.has(unit.id), `unit id "${unit.id}" is unique`);
    ids.add(unit.id);
    assert(Number.isInteger(unit.weight) && unit.weight > 0, `unit ${unit.id} weight is a positive integer`);
    assert(unit.standbyPort === undefined || (Number.isInteger(unit.standbyPort) && unit.standbyPort > 0 && unit.standbyPort < 65_536), `unit ${unit.id} standbyPort is a TCP port`);
    // Not built yet: a gray instance writes to one copy's store, and its commits would need shipping too.
    assert(unit.gray === undefined || unit.standby === undefined, `unit ${unit.id} has a gray instance or a standby, not both (yet)`);
  }
  assert(Number.isInteger(file.ring.vnodesPerWeight) && file.ring.vnodesPerWeight > 0, 'ring.vnodesPerWeight > 0');
  assert(isCurrency(file.fx.pivot), 'fx.pivot is a known currency');
  const products = makeProductTable(file.products);
  assert(products.has(file.issuance.defaultProduct), 'issuance.defaultProduct names a product');
  assert(isCurrency(file.issuance.currency), 'issuance.currency is known');
  const bands = file.issuance.scoreBands;
  for (let i = 1; i < bands.length; i++) {
    assert((bands[i - 1]?.minScore ?? 0) > (bands[i]?.minScore ?? 0), 'issuance.scoreBands sorted by minScore, descending');
  }
  return { file, products, fx: makeFxTable(file.fx.pivot as Currency, file.fx.rates) };
}
