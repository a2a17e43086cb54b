"""Who is signed in and what they may do: roles and the view guard, session lifetime, sign-in
throttling, the audit receivers of sign-in and sign-out, and the landing page."""
