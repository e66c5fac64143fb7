// Runs one generated client in the page and records everything it reports in
// `window.log`, which the Python test reads. The client modules are served
// from /dist/ exactly as `npm run build` emitted them.

const log = {
  events: [], // {id, event, data} in arrival order
  states: [], // every state change
  errors: [], // {message, fatal, status, closeCode, reason}
  resyncs: 0,
  tokenCalls: 0,
  subscribed: [], // answers to the WebSocket client's subscribe()
  subscribeFailures: [], // its rejections (a closed client rejects what still waits)
};
window.log = log;

function record(error) {
  log.errors.push({
    message: error.message,
    fatal: error.fatal,
    status: error.status ?? null,
    closeCode: error.closeCode ?? null,
    reason: error.reason ?? null,
  });
}

// kind: "sse" | "websocket"; options: {url, channel, token, heartbeatInterval, backoff}
window.startClient = async (kind, options) => {
  const getToken = () => {
    log.tokenCalls += 1;
    return options.token;
  };
  const common = {
    url: options.url,
    getToken,
    heartbeatInterval: options.heartbeatInterval,
    backoff: options.backoff,
  };
  let client;
  if (kind === "sse") {
    const { RealtimeSSEClient } = await import("/dist/sse.js");
    client = new RealtimeSSEClient({ ...common, channel: options.channel });
    client.on("*", (data, meta) => log.events.push({ id: meta.id, event: meta.event, data }));
    client.onResync(() => (log.resyncs += 1));
  } else {
    const { RealtimeWebSocketClient } = await import("/dist/websocket.js");
    client = new RealtimeWebSocketClient(common);
    client.onResync(() => (log.resyncs += 1));
    client
      .subscribe(options.channel, (data, meta) => log.events.push({ id: meta.id, event: meta.event, data }))
      .then(
        (answer) => log.subscribed.push(answer),
        (error) => log.subscribeFailures.push(error.message),
      );
  }
  client.onState((state) => log.states.push(state));
  client.onError(record);
  window.client = client;
};

window.harnessReady = true;
