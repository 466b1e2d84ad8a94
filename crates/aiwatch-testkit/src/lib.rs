//! Loopback fakes shared by every aiwatch test: nothing here reaches beyond 127.0.0.1 / ::1.
