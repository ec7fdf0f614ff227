"""VMM drivers behind one interface (`VmmDriver`): QEMU today."""
