// URLs as people see them: in answers, logs, the dashboard and messages, never with their credentials.

/**
 * `url` without the `user:password@` part (the rest as written). A string that is not a URL is returned
 * with anything before an '@' in its authority removed, so a malformed URL does not show a password either.
 */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === '' && u.password === '') return url;
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1');
  }
}
