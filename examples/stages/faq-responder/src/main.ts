import { runService } from '@va/actor';
import { faqActor } from './faq.js';

// Leases, session takeover, heartbeats, drain on SIGTERM: the actor host does what every stage does.
await runService({ stage: 'deep-responder', createActor: faqActor });
