import type { CardNumberCipher } from '../domain/card-number.js';
import HashRing from 'hashring';
import { assert } from '../domain/limits.js';
import { unitOfAuthorizationId } from '../domain/protocol.js';

// Routing contract: account id -> unit id, through a ketama-compatible consistent
// hash ring over unit ids, with virtual nodes in proportion to each unit's weight.
// Card numbers carry their account id (domain/pan.ts) and authorization ids carry
// their unit (domain/protocol.ts), so no request needs a directory lookup.
// Adding a unit moves only about 1/n of the accounts; which accounts move is a
// function of the ring alone.

export interface RingMember {
  id: string;
  weight: number;
}

/** The parts of hashring's ring that ring.get() uses (index.js: get, find, hashValue). */
interface RingInternals {
  ring: Array<{ server: string }>;
  find(hashValue: number): number;
  hashValue(key: string): number;
}

export class Router {
  private readonly ring: HashRing;
  private readonly unitIds: Set<string>;

  constructor(members: readonly RingMember[], vnodesPerWeight: number, private readonly cipher: CardNumberCipher) {
    assert(members.length > 0, 'the ring has members');
    assert(Number.isInteger(vnodesPerWeight) && vnodesPerWeight > 0, 'vnodesPerWeight is a positive integer');
    const servers: Record<string, { weight: number }> = {};
    for (const member of members) {
      assert(Number.isInteger(member.weight) && member.weight > 0, 'weights are positive integers');
      servers[member.id] = { weight: member.weight };
    }
    // The cache would thrash with millions of accounts; md5 and a binary search cost ~1 us.
    this.ring = new HashRing(servers, 'md5', { 'vnode count': vnodesPerWeight, 'max cache size': 1 });
    this.unitIds = new Set(members.map((member) => member.id));
  }

  /** The unit of a card: the ring is keyed by the card prefix, the first 14 digits of every card of an account. */
  unitOfCardPrefix(cardPrefix: string): string {
    // ring.get() wraps this lookup in an LRU cache that only misses with millions of
    // accounts (and costs a get and an evicting set per miss); find(hashValue(key))
    // is the same ketama lookup without it.
    const ring = this.ring as unknown as RingInternals;
    const node = ring.ring[ring.find(ring.hashValue(cardPrefix))];
    assert(node !== undefined && this.unitIds.has(node.server), 'the ring answers a member');
    return node.server;
  }

  /** The unit of an account: that of its cards (the account id is enciphered into their prefix). */
  unitOfAccount(accountId: string): string {
    return this.unitOfCardPrefix(this.cipher.cardPrefix(accountId));
  }

  /** The unit an authorization id names, or null if it names no unit of this ring. */
  unitOfAuthorization(authorizationId: string): string | null {
    const unitId = unitOfAuthorizationId(authorizationId);
    return unitId !== null && this.unitIds.has(unitId) ? unitId : null;
  }
}
