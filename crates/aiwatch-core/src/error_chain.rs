//! Says an error with its causes: a library's top-level message often leaves out why (the
//! socket's refusal, the certificate's problem), which its sources carry.

/// `e`'s message followed by those of its causes, each once (a cause's text is often already
/// part of its parent's).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("connect failed")]
        Connect(#[source] std::io::Error),
        #[error("read failed: {0}")]
        Read(#[source] std::io::Error),
    }

    #[test]
    fn causes_are_added_once_and_not_when_already_said() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            with_causes(&Outer::Connect(refused())),
            "connect failed: refused"
        );
        assert_eq!(with_causes(&Outer::Read(refused())), "read failed: refused");
    }
}
