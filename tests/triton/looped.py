"""A pytest plugin for the interpreter runs of ``test_triton_interpreter.py``: it lowers the
triton launcher's limits so that the looped kernels (rows longer than ``MAX_FUSED_N``, channels
beyond one register tile) serve the small shapes of ``tests/ops`` too."""


def pytest_configure(config):
    from normswitch.kernels.triton import channels_first, launch

    launch.MAX_FUSED_N = 32
    launch.LOOP_BLOCK_N = 128
    channels_first.ONE_PASS_MAX_C = 8
    channels_first.CHUNK_CHOICES = (16, 8)
