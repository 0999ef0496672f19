// ISO 8583 field 39 response codes used by the authorization API.
export const responseCodes = {
  approved: '00',
  partialApproval: '10',
  invalidAmount: '13',
  unknownCard: '14',
  lostCard: '41',
  stolenCard: '43',
  insufficientFunds: '51',
  expiredCard: '54',
  wrongCvv: '55',
  notPermitted: '57',
  cashAmountLimit: '61',
  restrictedCountry: '62',
  cashCountLimit: '65',
  unitUnavailable: '91',
  duplicateTransmission: '94',
  systemError: '96',
} as const;

export type ResponseCode = (typeof responseCodes)[keyof typeof responseCodes];

export const responseCodeMeaning: Record<ResponseCode, string> = {
  '00': 'approved',
  '10': 'partial approval',
  '13': 'invalid amount',
  '14': 'unknown card number',
  '41': 'lost card',
  '43': 'stolen card',
  '51': 'insufficient open-to-buy',
  '54': 'expired card or wrong expiry',
  '55': 'wrong CVV',
  '57': 'transaction not permitted',
  '61': 'daily cash amount limit exceeded',
  '62': 'restricted country',
  '65': 'daily cash count limit exceeded',
  '91': 'unit unavailable',
  '94': 'duplicate transmission',
  '96': 'system error',
};

export function isApproval(code: ResponseCode): boolean {
  return code === '00' || code === '10';
}
