/**
 * Exact money arithmetic on integers. Prices carry at most 6 decimals per million tokens, so
 * a cost has at most 12 decimals: amounts are held as integer units of 10^-12.
 */
export const COST_SCALE = 12;
const ONE = 10n ** BigInt(COST_SCALE);
const MILLION = 1_000_000n;

/** Parses a decimal string ("0.15", "-3", "1.500000000000000") into units of 10^-12. */
export function toUnits(value: string): bigint {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(value.trim());
  if (!match) throw new Error(`not a decimal: ${value}`);
  const [, sign, whole, fraction = ''] = match;
  const significant = fraction.replace(/0+$/, '');
  if (significant.length > COST_SCALE) throw new Error(`more than ${COST_SCALE} decimals: ${value}`);
  const units = BigInt(whole) * ONE + BigInt(significant.padEnd(COST_SCALE, '0') || '0');
  return sign === '-' ? -units : units;
}

/** Units of 10^-12 as the shortest decimal string: 150000000000n → "0.15". */
export function fromUnits(units: bigint): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const whole = abs / ONE;
  const fraction = (abs % ONE).toString().padStart(COST_SCALE, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

/** Tokens times prices per million, exactly. */
export function costUnits(
  inputTokens: number,
  outputTokens: number,
  price: { inputPerMillion: string; outputPerMillion: string },
): bigint {
  const raw =
    BigInt(inputTokens) * toUnits(price.inputPerMillion) + BigInt(outputTokens) * toUnits(price.outputPerMillion);
  return raw / MILLION;
}
