"""The state keeper: the mesh's sequencer and the single writer of each trace's state."""
