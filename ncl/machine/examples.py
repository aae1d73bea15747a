"""Hand-written assembly programs used by the tests, ``ncl.machine.horizon`` and the docs.

Each takes its argument in r1 and leaves its result in r0.
"""

LOOP_SUM = """
; r0 = r1 + (r1-1) + ... + 1, mod n
        CONST r0, 0
loop:   JZ r1, done
        ADD r0, r0, r1
        DEC r1, r1
        JMP loop
done:   HALT
"""
FACTORIAL_RECURSIVE = """
        CALL fact
        HALT
fact:   JNZ r1, rec
        CONST r0, 1
        RET
rec:    PUSH r1
        DEC r1, r1
        CALL fact
        POP r1
        MUL r0, r0, r1
        RET
"""
FIB_RECURSIVE = """
; r0 = fib(r1); r2 is scratch, saved on the data stack around the calls
        CALL fib
        HALT
fib:    CONST r2, 2
        LT r3, r1, r2
        JZ r3, rec
        MOV r0, r1
        RET
rec:    PUSH r1
        DEC r1, r1
        CALL fib
        POP r1
        PUSH r0
        DEC r1, r1
        DEC r1, r1
        CALL fib
        POP r2
        ADD r0, r0, r2
        INC r1, r1
        INC r1, r1
        RET
"""
