import type { Server } from 'node:http';
import { cleanupRun, stopStack, type Stack } from '../support/stack';

export default async function globalTeardown(): Promise<void> {
  const { __parleyStack: stack, __parleyReceiver: receiver } = globalThis as unknown as {
    __parleyStack?: Stack;
    __parleyReceiver?: { server: Server };
  };
  if (stack) {
    await stopStack(stack);
    await cleanupRun(stack.id);
  }
  receiver?.server.close();
}
