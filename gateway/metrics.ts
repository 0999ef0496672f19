import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { UnitClient, UnitClientStats } from './unit-client.js';

// Gateway metrics. Labelled children are cached: prom-client hashes the label set
// on every labels() call, which is measurable at tens of thousands per second.

type AuthLabels = 'channel' | 'unit' | 'version' | 'decision' | 'code';

export class GatewayMetrics implements UnitClientStats {
  readonly registry = new Registry();
  private readonly authorizations: Counter<AuthLabels>;
  private readonly requestSeconds: Histogram<'route'>;
  private readonly batchOps: Histogram<'unit' | 'instance'>;
  private readonly batchSeconds: Histogram<'unit' | 'instance' | 'outcome'>;
  readonly grayPercent: Gauge;
  readonly grayFallbacks: Counter<'unit' | 'outcome'>;
  readonly inflight: Gauge<'channel'>;
  readonly shed: Counter<'channel'>;
  private readonly authChildren = new Map<string, Counter.Internal>();
  private readonly routeChildren = new Map<string, Histogram.Internal<'route'>>();

  constructor(clients: () => readonly UnitClient[]) {
    collectDefaultMetrics({ register: this.registry, prefix: 'dsu_gateway_' });
    const registers = [this.registry];
    this.authorizations = new Counter({ name: 'dsu_gateway_authorizations_total', help: 'Authorization answers by channel, unit, version (stable or gray), decision and ISO 8583 response code.', labelNames: ['channel', 'unit', 'version', 'decision', 'code'], registers });
    this.requestSeconds = new Histogram({ name: 'dsu_gateway_request_duration_seconds', help: 'Channel request latency at the gateway, by route.', labelNames: ['route'], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers });
    this.batchOps = new Histogram({ name: 'dsu_gateway_unit_batch_operations', help: 'Operations per upstream batch to a unit instance.', labelNames: ['unit', 'instance'], buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers });
    this.batchSeconds = new Histogram({ name: 'dsu_gateway_unit_batch_duration_seconds', help: 'Round trip of one upstream batch, commit included.', labelNames: ['unit', 'instance', 'outcome'], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 3], registers });
    this.inflight = new Gauge({ name: 'dsu_gateway_inflight_requests', help: 'Channel requests in flight, by channel.', labelNames: ['channel'], registers });
    this.shed = new Counter({ name: 'dsu_gateway_shed_requests_total', help: 'Requests refused with 429 because their channel had its maximum in flight.', labelNames: ['channel'], registers });
    this.grayPercent = new Gauge({ name: 'dsu_gateway_gray_percent', help: 'Configured share of accounts on the gray version, in percent.', registers });
    this.grayFallbacks = new Counter({ name: 'dsu_gateway_gray_fallbacks_total', help: 'Gray-tagged requests whose unit had no gray instance up: sent to stable (outcome=stable) or refused with 91 (outcome=rejected).', labelNames: ['unit', 'outcome'], registers });
    const poolGauge = (name: string, help: string, pick: (client: UnitClient) => number): void => {
      new Gauge({ name, help, labelNames: ['unit', 'instance'], registers, collect() {
        for (const client of clients()) this.labels(client.unitId, client.instance).set(pick(client));
      } });
    };
    poolGauge('dsu_gateway_unit_wire_connected', 'Whether the wire to the unit instance is open (1) or not (0).', (c) => (c.wire.connected ? 1 : 0));
    poolGauge('dsu_gateway_unit_wire_batches_inflight', 'Batches written to the unit instance and not answered yet.', (c) => c.wire.inflight);
    poolGauge('dsu_gateway_unit_read_pool_connected', 'Open HTTP connections to the unit instance for reads.', (c) => c.readPool.stats.connected);
    poolGauge('dsu_gateway_unit_queued_operations', 'Operations waiting to join the next batch to the unit.', (c) => c.queuedOps);
    poolGauge('dsu_gateway_unit_up', '1 when the unit answers, 0 while the gateway fails its requests fast.', (c) => (c.isDown ? 0 : 1));
  }

  onAuthorization(channel: string, unit: string, version: string, approved: boolean, code: string): void {
    const key = `${channel}|${unit}|${version}|${code}`;
    let child = this.authChildren.get(key);
    if (child === undefined) {
      child = this.authorizations.labels(channel, unit, version, approved ? 'approved' : 'declined', code);
      this.authChildren.set(key, child);
    }
    child.inc();
  }

  private readonly inflightChildren = new Map<string, Gauge.Internal<'channel'>>();

  inflightChange(channel: string, delta: number): void {
    let child = this.inflightChildren.get(channel);
    if (child === undefined) {
      child = this.inflight.labels(channel);
      this.inflightChildren.set(channel, child);
    }
    child.inc(delta);
  }

  onRequest(route: string, seconds: number): void {
    let child = this.routeChildren.get(route);
    if (child === undefined) {
      child = this.requestSeconds.labels(route);
      this.routeChildren.set(route, child);
    }
    child.observe(seconds);
  }

  private readonly switches = new Counter({ name: 'dsu_gateway_unit_switches_total', help: 'Switches of an HA unit to its other copy, planned (operator) or not (failure).', labelNames: ['unit', 'planned'], registers: [this.registry] });
  private readonly switchSeconds = new Gauge({ name: 'dsu_gateway_unit_last_switch_seconds', help: 'Duration of the last switch of each HA unit, from the first failed health check to the new primary taking writes.', labelNames: ['unit'], registers: [this.registry] });

  onSwitch(unitId: string, planned: boolean, switchMs: number): void {
    this.switches.labels(unitId, planned ? 'true' : 'false').inc();
    this.switchSeconds.labels(unitId).set(switchMs / 1000);
  }

  onBatch(unitId: string, instance: string, opsCount: number, seconds: number, ok: boolean): void {
    this.batchOps.labels(unitId, instance).observe(opsCount);
    this.batchSeconds.labels(unitId, instance, ok ? 'ok' : 'failed').observe(seconds);
  }
}
