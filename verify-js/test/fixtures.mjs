// The fixtures' generated document: big.bin is not committed (10 MiB), it is
// rebuilt here byte for byte; fixtures/lamport/big.bin.belfry is its receipt
// from the real run. Its SHA-256 is 4d245041466e2b34e3b3917ceb51088134cd04fbeacc70990dd141c0df7857fa.
export const BIG_LEN = 10 * 1024 * 1024 + 123;

/** byte i = (31 i + 7) mod 251: not a multiple of any chunk size, no run repeats. */
export function bigFile() {
  const b = new Uint8Array(BIG_LEN);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + 7) % 251;
  return b;
}
