import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default tseslint.config(
  {
    ignores: [
      'node_modules',
      'dist',
      '.data',
      'bench/results',
      'chaos/results',
      'reports',
      '.stryker-tmp',
      'eslint.config.mjs',
      'jest.config.js',
      'jest.unit.config.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The layers of src/ (docs/design.md, "Code layout"): contracts are the leaf; workflows,
    // activities and the client meet only there; src/dev is npm start's, never production code's.
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.json'] })],
    },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            {
              target: './src/workflows',
              from: ['./src/activities', './src/client', './src/service', './src/stores'],
              message: 'Workflows meet activities and the client in src/contracts (activity types included).',
            },
            {
              target: './src/activities',
              from: ['./src/workflows', './src/client'],
              message: "Activities import the workflows' contracts from src/contracts.",
            },
            {
              target: './src/client',
              from: ['./src/workflows', './src/activities'],
              message: "The client imports the workflows' contracts from src/contracts.",
            },
            {
              target: './src/contracts',
              from: './src',
              except: ['./contracts'],
              message: 'Contracts are the leaf layer: they import only @temporalio/* and each other.',
            },
            {
              // Every file under src/ but src/dev itself and the dev entry point (npm start, src/service/main.ts).
              target: ['./src/*.ts', './src/!(dev|service)/**', './src/service/!(main).ts'],
              from: './src/dev',
              message: "src/dev holds npm start's local tools: production code never imports it.",
            },
          ],
        },
      ],
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no Node built-ins, no I/O libraries.
    files: ['src/workflows/**/*.ts', 'src/contracts/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [...nodeBuiltins, 'ioredis', 'pg', 'amqplib'].map((name) => ({
            name,
            message: 'Workflow code must stay deterministic: no Node built-ins or I/O clients.',
          })),
          patterns: [{ group: ['../activities/*', '!../activities'], message: 'Import activities as types only.' }],
        },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
