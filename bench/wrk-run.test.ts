// Tests of the wrk summary parser on wrk 4.1's real output.
import { describe, expect, it } from 'vitest';
import { parseWrk } from './wrk-run.js';

const OUTPUT = `Running 5s test @ http://127.0.0.1:8080/json
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.05ms  512.33us  12.01ms   90.11%
    Req/Sec    12.34k     1.02k   14.01k    71.00%
  Latency Distribution
     50%    1.98ms
     75%    2.21ms
     90%    2.52ms
     99%  850.00us
  122870 requests in 5.00s, 21.21MB read
Requests/sec:  24565.43
Transfer/sec:      4.24MB
`;

describe('parseWrk', () => {
  it('reads requests per second and the 99th percentile in seconds', () => {
    expect(parseWrk(OUTPUT)).toEqual({ requestsPerSecond: 24565.43, p99: 0.00085, errors: 0 });
    expect(parseWrk(OUTPUT.replace('850.00us', '1.50s')).p99).toBe(1.5);
  });

  it('counts non-2xx answers and socket errors', () => {
    const failing = `${OUTPUT}  Socket errors: connect 0, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 10\n`;
    expect(parseWrk(failing).errors).toBe(15);
  });

  it('refuses output without a summary', () => {
    expect(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused')).toThrow(/cannot read wrk/);
  });
});
