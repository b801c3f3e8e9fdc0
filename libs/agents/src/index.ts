export { AgentStore, AgentProfileError, UnknownAgentError, describeIssues, parseAgentProfile } from './store.js';
export { readProfileFile } from './file.js';
