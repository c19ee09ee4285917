"""Alert notifications: every alert the detectors raise is sent out, by a signed HTTPS webhook
and by e-mail over STARTTLS, through an outbox in the database (``outbox``) that a periodic job
delivers (``service``); neither message carries PII (``message``)."""
