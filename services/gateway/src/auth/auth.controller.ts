import { Controller, Get, HttpCode, Inject, Post, Put, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  AccessControlRpc,
  AccessRpc,
  ChangePasswordBodySchema,
  LoginBodySchema,
  MeSchema,
  RefreshBodySchema,
  TokenResponseSchema,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { ApiRoute, ValidBody, type Valid } from '../http/api-route';
import { clientAddress } from '../http/client-address';
import { Caller } from './principal';

@Controller('api/v1')
export class AuthController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post('auth/login')
  @HttpCode(200)
  @ApiRoute({
    summary: 'Log in with username and password',
    tags: ['auth'],
    body: LoginBodySchema,
    status: 200,
    response: TokenResponseSchema,
    errors: ['INVALID_CREDENTIALS', 'RATE_LIMITED'],
    public: true,
  })
  login(@ValidBody() { username, password }: Valid<typeof LoginBodySchema>, @Req() request: FastifyRequest) {
    // Failed logins are counted per username and client address (docs/access-control.md, "Limits").
    return this.rpc.call(AccessRpc.login, { username, password, client_address: clientAddress(request) });
  }

  @Post('auth/refresh')
  @HttpCode(200)
  @ApiRoute({
    summary: 'Trade a refresh token for new tokens; the old refresh token stops working',
    tags: ['auth'],
    body: RefreshBodySchema,
    status: 200,
    response: TokenResponseSchema,
    errors: ['INVALID_CREDENTIALS'],
    public: true,
  })
  refresh(@ValidBody() body: Valid<typeof RefreshBodySchema>) {
    return this.rpc.call(AccessRpc.refresh, body);
  }

  @Post('auth/logout')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Revoke a refresh token',
    tags: ['auth'],
    body: RefreshBodySchema,
    status: 204,
    response: null,
    public: true,
  })
  async logout(@ValidBody() body: Valid<typeof RefreshBodySchema>) {
    await this.rpc.call(AccessRpc.logout, body);
  }

  @Get('me')
  @ApiRoute({ summary: 'Who the caller is', tags: ['auth'], status: 200, response: MeSchema })
  me(@Caller() actor: Principal): Promise<z.infer<typeof MeSchema>> {
    return this.rpc.call(AccessRpc.me, { actor });
  }

  @Put('me/password')
  @HttpCode(204)
  @ApiRoute({
    summary: "Change the caller's password; their refresh tokens stop working",
    tags: ['auth'],
    body: ChangePasswordBodySchema,
    status: 204,
    response: null,
    errors: ['FORBIDDEN'],
  })
  async changePassword(@Caller() actor: Principal, @ValidBody() body: Valid<typeof ChangePasswordBodySchema>) {
    await this.rpc.call(AccessControlRpc.changePassword, { actor, ...body });
  }
}
