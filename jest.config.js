/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  // npm run build's output (dist/, the client package in dist/client-package) is not for jest.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/dist/'],
  modulePathIgnorePatterns: ['<rootDir>/dist/'],
  testTimeout: 120_000,
  // Temporal servers take a moment to start; tests share nothing but the machine's services.
  maxWorkers: 1,
  setupFiles: ['<rootDir>/test/setup.ts'],
};
