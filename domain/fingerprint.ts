// A 64-bit FNV-1a fingerprint (two 32-bit lanes with different offsets) of a
// request's content, to tell an idempotent retry from a reused key with other
// content. It covers only non-secret text and bytes that are already keyed
// hashes (the card-number and CVV hashes), so it reveals nothing about the card.
// It replaced an HMAC-SHA256 per request: HMACs were ~30% of a unit's CPU in a
// profile under load (see BENCHMARKS.md), and collision resistance against an
// adversary is not needed, since only the key's owner can present the key.

const prime = 0x01000193;

export function fingerprint(bytes: readonly Buffer[], text: string): Buffer {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (const buffer of bytes) {
    for (let i = 0; i < buffer.length; i++) {
      const byte = buffer[i] as number;
      a = Math.imul(a ^ byte, prime);
      b = Math.imul(b ^ byte ^ 0x5a, prime);
    }
  }
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    a = Math.imul(a ^ code, prime);
    b = Math.imul(b ^ code ^ 0x5a, prime);
  }
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(a >>> 0, 0);
  out.writeUInt32BE(b >>> 0, 4);
  return out;
}
