// The demo page's WebSocket side: the project's RealtimeWebSocketClient,
// subscribed to one channel and publishing over the same connection.
import { RealtimeWebSocketClient } from "/demo/client/websocket.js";

export const label = "WebSocket";

export function start({ url, channel, getToken, heartbeatInterval, onEvent, onResync }) {
  const client = new RealtimeWebSocketClient({ url, getToken, heartbeatInterval });
  client.onResync(onResync);
  return {
    client,
    subscribed: client.subscribe(channel, (data, meta) => onEvent(meta.id, meta.event, data)),
    async publish(data, event) {
      const { id } = await client.publish(channel, data, event);
      return id;
    },
  };
}
