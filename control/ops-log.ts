// sempipe's own operational log (listening, reload, upstream errors), on stderr so it never mixes
// with the audit stream on stdout: JSON lines, or pretty lines when a person watches a terminal.
// SEMPIPE_LOG_LEVEL (default info) lets an operator see the debug lines too, e.g. refused startups.
import pino, { type Logger } from 'pino';
import PinoPretty from 'pino-pretty';

export function createOpsLog(name: string): Logger {
  const level = process.env.SEMPIPE_LOG_LEVEL || 'info';
  if (!Object.hasOwn(pino.levels.values, level) && level !== 'silent') {
    throw new Error(`SEMPIPE_LOG_LEVEL must be one of ${Object.keys(pino.levels.values).join(', ')}, silent (got "${level}")`);
  }
  const options = { base: { component: name }, timestamp: pino.stdTimeFunctions.isoTime, level };
  if (process.stderr.isTTY) return pino(options, PinoPretty({ colorize: true, sync: true, destination: 2 }));
  return pino(options, pino.destination({ dest: 2, sync: true }));
}
