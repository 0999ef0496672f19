// The shapes of the fields of a channel request, shared by the gateway, which
// checks what channels send, and the units, which check again what they decode
// (units/op-decode.ts), so that neither stores a field the other would refuse.

export const cardNumberPattern = /^[0-9]{12,19}$/;
export const expiryPattern = /^[0-9]{4}-(0[1-9]|1[0-2])$/;
export const cvvPattern = /^[0-9]{3,4}$/;
export const mccPattern = /^[0-9]{4}$/;
export const countryPattern = /^[A-Z]{2}$/;
export const merchantIdPattern = /^[A-Za-z0-9._:-]{1,64}$/;
export const idempotencyKeyPattern = /^[\x21-\x7e]{1,128}$/;
