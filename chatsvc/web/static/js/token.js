// The signed-in user's token. The page only reads the claims to label the user; the server
// verifies it. Kept in sessionStorage: per tab, gone when the tab closes.

const KEY = "chatsvc.token";

/** {sub, name, exp} from a JWT's payload, or null if it is not a JWT. */
export function claims(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    const body = JSON.parse(new TextDecoder().decode(bytes));
    return typeof body === "object" && body !== null ? body : null;
  } catch {
    return null;
  }
}

export const saved = () => sessionStorage.getItem(KEY);
export const save = (token) => sessionStorage.setItem(KEY, token);
export const forget = () => sessionStorage.removeItem(KEY);

/** Ask the development-only endpoint for a token; throws Error(code: message). */
export async function devToken(sub, name) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub, name }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || typeof body.token !== "string") {
    const error = body.error || { code: `http_${response.status}`, message: response.statusText };
    throw new Error(`${error.code}: ${error.message}`);
  }
  return body.token;
}

/** {dev_sign_in, environment} as the server reports it. */
export async function appConfig() {
  const response = await fetch("/app/config.json");
  return response.ok ? response.json() : { dev_sign_in: false };
}
