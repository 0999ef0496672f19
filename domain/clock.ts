// Time is injected so that tests and the simulator can move it (hold expiry,
// billing cycles, interest). Production reads the wall clock plus an offset that
// the simulator sets; tests pass a manual clock.

export interface Clock {
  nowMs(): number;
}

export class OffsetClock implements Clock {
  constructor(public offsetMs = 0) {}
  nowMs(): number {
    return Date.now() + this.offsetMs;
  }
}

export class ManualClock implements Clock {
  constructor(private currentMs: number) {}
  nowMs(): number {
    return this.currentMs;
  }
  advanceMs(deltaMs: number): void {
    this.currentMs += deltaMs;
  }
}

export const msPerDay = 86_400_000;
