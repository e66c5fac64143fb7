// The demo page's Server-Sent Events side: the project's RealtimeSSEClient on
// one channel; publishing goes over HTTP, as it does for any SSE client.
import { RealtimeSSEClient } from "/demo/client/sse.js";

export const label = "Server-Sent Events";

export function start({ url, channel, token, getToken, heartbeatInterval, onEvent, onResync }) {
  const client = new RealtimeSSEClient({ url, channel, getToken, heartbeatInterval });
  client.on("*", (data, meta) => onEvent(meta.id, meta.event, data));
  client.onResync(onResync);
  return {
    client,
    // The stream is subscribed once it is open (the server subscribes before answering).
    subscribed: new Promise((resolve) => {
      const stop = client.onState((state) => {
        if (state !== "open") return;
        stop();
        resolve({ recovered: true });
      });
    }),
    async publish(data, event) {
      const response = await fetch(`${url}/channels/${encodeURIComponent(channel)}/events`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify(event === undefined ? { data } : { event, data }),
      });
      const answer = await response.json();
      if (response.status !== 202) throw new Error(`${response.status}: ${answer.detail}`);
      return answer.id;
    },
  };
}
