import { runToolService } from '@va/tools';
import { convertUnits } from './units.js';

// The whole service: NATS_URL (and NATS_USER=tools with authorization) from env; SIGTERM stops it.
await runToolService(convertUnits);
