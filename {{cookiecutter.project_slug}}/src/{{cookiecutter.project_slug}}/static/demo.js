// The demo page: the project's own TypeScript clients (client/dist, served under
// /demo/client/) connected to this service. Nothing here re-implements the
// protocol: connecting, heartbeats, reconnecting and resuming are the clients'.

const config = JSON.parse(document.getElementById("demo-config").textContent);
const $ = (id) => document.getElementById(id);
const MAX_ROWS = 500;

let client = null;
// The transport module's handle on `client`: its subscription and how it publishes.
let connection = null;
let kind = null;
let channel = null;
let token = null;
let state = "closed";
let lastId = null;
let reconnects = 0;
let subscribedOnce = false;
// While a dropped connection is held down: the promise the client's getToken() waits on.
let hold = null;

function log(text, tone = "") {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (tone) item.className = tone;
  $("log").append(item);
  $("log").scrollTop = $("log").scrollHeight;
}

function setState(next) {
  const previous = state;
  state = next;
  $("state").textContent = next;
  $("state").dataset.state = next;
  if (next === "open" && previous === "reconnecting") {
    reconnects += 1;
    $("reconnects").textContent = String(reconnects);
    log(lastId ? `reconnected: resuming after id ${lastId}` : "reconnected", "good");
  } else if (next === "reconnecting" && previous === "open") {
    log("connection lost: the client reconnects by itself");
  } else {
    log(`state: ${next}`);
  }
  setSubscribed(next === "open" && subscribedOnce);
  $("drop").disabled = next !== "open" && hold === null;
}

function setSubscribed(yes) {
  $("subscribed").dataset.subscribed = String(yes);
  $("subscribed").textContent = yes ? `yes, to ${channel}` : "no";
}

function addEvent(id, event, data) {
  lastId = id;
  $("last-id").textContent = id;
  const row = document.createElement("tr");
  row.className = "fresh";
  row.dataset.id = id;
  row.dataset.json = JSON.stringify(data);
  for (const text of [new Date().toLocaleTimeString(), id, event, JSON.stringify(data)]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  const body = $("events");
  body.append(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(0);
  $("event-count").textContent = String(body.rows.length);
}

async function getToken() {
  // A held-down connection asks for its token and waits here until the hold ends.
  if (hold) await hold.promise;
  return token;
}

async function connect() {
  const pasted = $("token").value.trim();
  if (!pasted) {
    log("paste a token first (or mint one)", "error");
    return;
  }
  disconnect();
  token = pasted;
  kind = $("transport").value;
  channel = $("channel").value.trim();
  lastId = null;
  reconnects = 0;
  subscribedOnce = false;
  $("events").replaceChildren();
  $("event-count").textContent = "0";
  $("last-id").textContent = "–";
  $("reconnects").textContent = "0";
  const transport = await import(`/demo/static/demo-${kind}.js`);
  const current = transport.start({
    url: location.origin,
    channel,
    token,
    getToken,
    heartbeatInterval: config.heartbeatInterval,
    onEvent: addEvent,
    onResync: () => log("resync: the missed events are gone; live events follow", "error"),
  });
  connection = current;
  client = current.client;
  current.subscribed.then(
    ({ recovered }) => {
      if (connection !== current) return;
      subscribedOnce = true;
      setSubscribed(state === "open");
      log(`subscribed to ${channel}` + (recovered ? "" : " (not recovered)"), "good");
    },
    (error) => {
      if (connection === current) log(`subscribe failed: ${error.message}`, "error");
    },
  );
  client.onState(setState);
  client.onError((error) => {
    if (error.fatal) log(`${error.message} (fatal: the client stopped)`, "error");
    // While a drop is held, the client's complaints are the drop itself.
    else log(error.message, hold ? "" : "error");
  });
  log(`connecting over ${transport.label} to ${channel}`);
  setState(client.state);
  $("disconnect").disabled = false;
  $("publish").disabled = false;
}

function disconnect() {
  endHold(false);
  if (client) {
    const old = client;
    client = null;
    connection = null;
    old.close();
  }
  $("disconnect").disabled = true;
  $("publish").disabled = true;
  $("drop").disabled = true;
}

function drop() {
  if (hold) {
    endHold(true);
    return;
  }
  const seconds = Math.max(0, Number($("hold").value) || 0);
  let release;
  const promise = new Promise((resolve) => (release = resolve));
  hold = { promise, release, timer: setTimeout(() => endHold(true), seconds * 1000) };
  $("drop").textContent = "Reconnect now";
  log(`dropping the connection for ${seconds} s`);
  // The clients drop their connection when the browser goes offline, and come
  // back (resuming from their last id) on their own: the same path a real
  // network failure takes.
  window.dispatchEvent(new Event("offline"));
}

function endHold(reconnect) {
  if (!hold) return;
  clearTimeout(hold.timer);
  hold.release();
  hold = null;
  $("drop").textContent = "Drop connection";
  $("drop").disabled = state !== "open";
  if (reconnect) window.dispatchEvent(new Event("online"));
}

async function publish() {
  const result = $("publish-result");
  let data;
  try {
    data = JSON.parse($("data").value);
  } catch (error) {
    result.textContent = `data is not JSON: ${error.message}`;
    return;
  }
  const event = $("event-name").value.trim() || undefined;
  try {
    if (!connection) throw new Error("not connected");
    const id = await connection.publish(data, event);
    result.textContent = `published, id ${id}`;
    result.dataset.id = id;
    result.dataset.count = String(Number(result.dataset.count || 0) + 1);
  } catch (error) {
    result.textContent = `not published: ${error.message}`;
    log(`publish failed: ${error.message}`, "error");
  }
}

async function mint() {
  const wanted = $("channel").value.trim();
  const response = await fetch("/demo/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ channel: wanted }),
  });
  const answer = await response.json();
  if (response.status !== 200) {
    log(`no token minted: ${answer.detail}`, "error");
    return;
  }
  $("token").value = answer.token;
  $("mint-note").textContent = `for ${wanted}, valid ${answer.expires_in / 60} min`;
  log(`minted a development token for ${wanted}`);
}

async function init() {
  $("title").textContent = config.title;
  document.title = `${config.title}: live demo`;
  for (const name of config.transports) {
    const option = document.createElement("option");
    option.value = name;
    // Each transport's module names itself; it loads only once the client is built.
    option.textContent = config.clientBuilt ? (await import(`/demo/static/demo-${name}.js`)).label : name;
    $("transport").append(option);
  }
  $("mint").hidden = !config.canMint;
  if (!config.canMint) {
    $("mint-note").textContent = `Mint one with: ${config.mintCommand}`;
  }
  $("not-built").hidden = config.clientBuilt;
  $("connect").disabled = !config.clientBuilt;
  $("connect").addEventListener("click", () => void connect());
  $("disconnect").addEventListener("click", () => {
    disconnect();
    log("disconnected");
  });
  $("drop").addEventListener("click", drop);
  $("publish").addEventListener("click", () => void publish());
  $("mint").addEventListener("click", () => void mint());
  document.body.dataset.ready = "true";
}

void init();
