"""The pages surface: the hosted pages, and /oauth/authorize|logout that lead there.

The one surface with a cookie and forms: HTML errors, a Content-Security-Policy that allows our
stylesheet and nothing else (no script at all), no caching, Flask-WTF CSRF tokens in a signed
cookie, and the browser-session cookie (idp.http.cookies).
"""

from idp.http.surfaces import Surface
from idp.oauth.browser_views import bp as oauth_browser_bp
from idp.pages.account import bp as account_bp
from idp.pages.render import render_error
from idp.pages.views import bp

# form-action is left out: a browser applies it to the redirects after a form is sent too,
# and the consent form ends at the application's redirect URI.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)

SURFACE = Surface(
    "pages",
    blueprints=(bp, account_bp, oauth_browser_bp),
    prefixes=(
        "/signin",
        "/signed-in",
        "/signup",
        "/verify-email",
        "/forgot-password",
        "/reset-password",
        "/login",
        "/consent",
        "/pages/",
        "/favicon.ico",
        "/oauth/authorize",
        "/oauth/logout",
    ),
    render_error=render_error,
    content_security_policy=CONTENT_SECURITY_POLICY,
    no_store=True,
    cookie_session=True,
)
