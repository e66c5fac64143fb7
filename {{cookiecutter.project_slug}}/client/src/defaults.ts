/** Defaults that match the service this client was generated with. */

/** Seconds between the server's heartbeats on an idle connection (`HEARTBEAT_INTERVAL`). */
export const DEFAULT_HEARTBEAT_INTERVAL = {{ cookiecutter.heartbeat_interval | float }};
