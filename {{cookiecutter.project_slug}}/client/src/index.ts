{% set sse = cookiecutter.transport in ["both", "sse"] %}
{% set ws = cookiecutter.transport in ["both", "websocket"] %}
/** Every client of the package: `import { ... } from "<package>"`, or one transport's entry point. */
export { RealtimeError } from "./errors.js";
export type { ConnectionState } from "./lifecycle.js";
export { tokenExpiry } from "./token.js";
{% if sse %}
export { RealtimeSSEClient } from "./sse.js";
export type { EventHandler, EventMeta, RealtimeSSEClientOptions } from "./sse.js";
{% endif %}
{% if ws %}
export { RealtimeWebSocketClient, webSocketUrl } from "./websocket.js";
export type {
  MessageHandler,
  MessageMeta,
  RealtimeWebSocketClientOptions,
  SocketLike,
} from "./websocket.js";
{% endif %}
