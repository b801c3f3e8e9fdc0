import { localTimeTool } from '@va/responder';
import { defineToolService, runToolService } from '@va/tools';

// The deep responder's built-in clock, as a service of its own: what an in-process tool becomes when it moves out.
await runToolService(
  defineToolService({
    name: 'world_clock',
    description: 'The current time and date, here or in a given time zone, for "what time is it" questions.',
    args: localTimeTool.args,
    timeoutMs: 1_000,
    run: (args, signal) => localTimeTool.run(args, signal, {}),
  }),
);
