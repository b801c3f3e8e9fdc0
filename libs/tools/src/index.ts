export { defineToolService, runCall, runToolService, startToolService, type ToolServiceDefinition } from './service.js';
export { REMOTE_TOOLS_DEFAULTS, RemoteTools, toolsOf, type RemoteTool } from './remote.js';
export { McpNotAllowedError, McpServers, McpTools, type McpOptions } from './mcp.js';
