"""The self-service portal's pages (docs/web.md): sign-in (:mod:`.signin`), re-authentication
(:mod:`.reauth`), the security page and its changes (:mod:`.factors`), security keys and passkeys
(:mod:`.webauthn`); who may see them is decided in :mod:`.guard`."""
