// The current policies of a process and their compiled rules per subject. The worker swaps the
// policies on every config push; sessions compare the generation before each statement, so a
// change applies to the next statement of sessions already open, and compiling happens once per
// (generation, subject).
import { compileRules, type CompiledRules, type PolicySubject } from './engine.js';
import type { PolicyDocument } from './policy-schema.js';

export class PolicySet {
  private current: readonly PolicyDocument[] = [];
  private compiled = new Map<string, CompiledRules>();
  /** Bumped by every update; a session holding rules of an older generation recompiles. */
  generation = 0;

  constructor(policies: readonly PolicyDocument[] = []) {
    this.update(policies);
  }

  get policies(): readonly PolicyDocument[] {
    return this.current;
  }

  update(policies: readonly PolicyDocument[]): void {
    this.current = policies;
    this.compiled = new Map();
    this.generation++;
  }

  /** The compiled rules of `subject` under the current policies (cached until the next update). */
  rulesFor(subject: PolicySubject): CompiledRules {
    const key = `${subject.binding}\n${subject.service}\n${subject.job ?? ''}`;
    let rules = this.compiled.get(key);
    if (rules === undefined) {
      rules = compileRules(this.current, subject);
      this.compiled.set(key, rules);
    }
    return rules;
  }
}
