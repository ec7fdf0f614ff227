"""Host-side client of the guest agent (generated stubs in `pb/`)."""
