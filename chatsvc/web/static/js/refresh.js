// Keeping a session past its token's expiry (README, `refresh`): shortly before `exp` a new
// token for the same user is handed to the live socket, which keeps running, and becomes
// socket.auth.token so later reconnects and recoveries use it too. Where the new token comes
// from is the caller's: the development endpoint here; a real app asks its login service.

const LEAD_MS = 60000;
const MIN_DELAY_MS = 1000;

/** Run `renew()` before `exp` (seconds since the epoch); returns a cancel function. */
export function beforeExpiry(exp, renew) {
  if (typeof exp !== "number") return () => {};
  const left = exp * 1000 - Date.now();
  // A minute ahead, or halfway for short tokens, never in a tight loop.
  const delay = Math.max(MIN_DELAY_MS, left - Math.min(LEAD_MS, left / 2));
  const timer = setTimeout(renew, delay);
  return () => clearTimeout(timer);
}
