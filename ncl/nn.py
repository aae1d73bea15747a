"""``ncl.nn``: the public names of the neural computer, re-exported from :mod:`ncl.computer` (where they live)."""

from ncl.computer import (DEFAULT_MACHINE, MODES, PLACES, READERS, WRITERS, ComputerConfig, ComputerOutput,
                          ComputerState, Heads, NeuralComputer, PromptHeads, straight_through,
                          straight_through_gate)

__all__ = ["ComputerConfig", "ComputerOutput", "ComputerState", "DEFAULT_MACHINE", "Heads", "MODES",
           "NeuralComputer", "PLACES", "PromptHeads", "READERS", "WRITERS", "straight_through",
           "straight_through_gate"]
