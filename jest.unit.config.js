/**
 * Pure unit tests only (test/unit): no server, no services, no Temporal. `npm run mutate` (Stryker)
 * runs these and nothing else; they are also part of `npm test` through jest.config.js.
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
  testTimeout: 10_000,
};
